"""The classify worker: :mod:`.classify_step` turns a batch of image records into predictions and dead letters;
:mod:`.classify_agent` is its Faust app (topics, agent, batch producer, metrics)."""
