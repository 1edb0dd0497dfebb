"""One module per tab of the app: layout and event wiring only."""
