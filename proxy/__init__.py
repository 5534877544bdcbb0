"""tile-proxy: the caching load balancer in front of the render nodes (see proxy/README.md)."""
