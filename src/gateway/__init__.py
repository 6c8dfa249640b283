"""The composition root: settings, the container that wires every layer, and the CLI."""
