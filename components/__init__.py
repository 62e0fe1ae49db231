"""Motion's Pulumi components: one ComponentResource per concern."""
