"""Benchmark scripts that drive real service processes against the WhatsApp sandbox and print result tables."""
