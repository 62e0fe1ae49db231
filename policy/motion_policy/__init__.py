"""Motion's AWS policy rules: plain functions over a small resource model.

Nothing in this package except `pack` imports Pulumi, so the same rules run in unit tests, over the
program's resources under mocks, and inside the CrossGuard policy pack.
"""
