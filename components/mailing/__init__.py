"""Mailing: the pipeline component (`mailing`), its HTTP API (`http_api`) and that API's CORS
(`cors`), and the SDK layer built from the mailer's lock (`sdk_layer`)."""
