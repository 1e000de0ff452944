"""inferloop's offline trainer: retraining on logged feedback, evaluation, publishing to the model repository."""
