"""Files in and out: atomic writes (:mod:`.files`) and the one image decoder/encoder (:mod:`.images`)."""
