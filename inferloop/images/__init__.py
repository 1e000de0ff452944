"""Images: decoding untrusted bytes (:mod:`.decode`), preprocessing to model input (:mod:`.preprocess`) and
reading images that travel by reference (:mod:`.uris`). Above the light client layer: Pillow and numpy."""
