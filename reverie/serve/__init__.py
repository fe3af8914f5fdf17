"""Ray Serve application: a FastAPI ingress around the Pipeline."""
