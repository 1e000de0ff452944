"""The Kafka side of the light client layer: connection options built from the settings (:mod:`.options`), the
topics inferloop creates (:mod:`.topics`), producers of images and feedback (:mod:`.producers`) and readers of
every topic (:mod:`.readers`). kafka-python only; nothing heavy is imported here."""
