"""The stack's configuration: the key table (`keys`), the typed model (`model`), the reader of raw
strings (`reader`), the cross-field checks (`validation`) and the loader that turns raw config into one
validated `StackConfig` before any resource is registered (`loader`). Imports nothing else of
`components`."""
