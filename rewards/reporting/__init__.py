"""What a run hands over: report pages, model cards and moving exported checkpoints to and from the Hub."""
