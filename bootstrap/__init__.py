"""bootstrap: a render node's life cycle — user-data and identity from IMDSv2, fresh code from S3
(sha256-verified), then boxlink and the render server under supervision. See bootstrap/README.md."""
