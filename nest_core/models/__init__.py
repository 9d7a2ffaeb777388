"""The seeds NeST grows from: LeNet-300-100, LeNet-5, AlexNet, VGG-16 (``seeds``) and
ResNet-50 (``resnet``), their widths scaled by r and a random share d of connections."""
