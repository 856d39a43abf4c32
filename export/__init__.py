"""Export of trained PixelCNN checkpoints: ONNX (dynamo exporter), TorchScript and torch.export (.pt2)."""
