"""Pure drawing functions: arrays and events in, plotly figures or HTML strings out."""
