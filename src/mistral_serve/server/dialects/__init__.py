"""One module per API dialect: its body in as Runs of the generation service, the engine's
outputs out as its JSON or event stream. base.py holds what every dialect shares."""
