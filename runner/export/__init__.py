"""What a trained run can leave: SavedModel, TFLite and ONNX files that take raw inputs, checked before they are kept."""
