"""Where kept frames, manifests and grids live.

``base``: the object-store protocol and its one error, ``StoreError``;
``directory``, ``s3_boto3``, ``s3lite``: the adapters, each raising only
``StoreError``; ``factory``: ``open_object_store``, from a store URL;
``frames``: ``FrameStore``, the stream layout over any of them. Import from
the module that defines a name: nothing is re-exported here, so that opening
a directory store never loads an S3 client.
"""
