"""gigaformat: the formats every part of gigatile shares, and nothing else.

Documents in S3 (manifest, state, changes, registration records, release pointers), files on a node
(layout and markers), level geometry and DeepZoom numbering, names, the error family, the time format
and the command-line conventions. Standard library (and boto3 for S3 reads) only: boxlink, tile-proxy
and node-bootstrap import it without loading the renderer. See README.md.
"""
