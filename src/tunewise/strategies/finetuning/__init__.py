"""Fine-tuning: weights change."""
