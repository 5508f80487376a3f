"""Everything that produces data: readers, the Data API, Coordinator and QueueRunner, loaders."""
