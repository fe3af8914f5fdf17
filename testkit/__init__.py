"""What the tests and the benchmarks share: free loopback ports and the test API key (servers.py),
`reverie serve` in a subprocess with its own Ray (serve_process.py), headless Chromium (browser.py),
and small datasets built on the fly (datasets.py). Not part of the installed package."""
