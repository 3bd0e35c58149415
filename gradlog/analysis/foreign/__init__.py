"""Reading the logs other tools write (TensorBoard, Lightning, Hugging Face, W&B): see docs/import.md."""
