"""The local runtime: what AWS does around the handlers, emulated in-process on moto."""
