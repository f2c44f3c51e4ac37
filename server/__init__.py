"""The gRPC tagging service. It uses the `tagger` library only through `tagger.Tagger`."""
