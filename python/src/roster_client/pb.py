"""The generated messages and stubs of every roster.v1 service, under short names: ``pb.registry_pb2``,
``pb.feed_pb2``, ``pb.collector_pb2``, ``pb.producer_pb2`` and their ``*_pb2_grpc`` stubs (made by
python/generate.py; see its docstring)."""

from ._proto.roster.v1 import (
    collector_pb2,
    collector_pb2_grpc,
    feed_pb2,
    feed_pb2_grpc,
    producer_pb2,
    producer_pb2_grpc,
    registry_pb2,
    registry_pb2_grpc,
)

__all__ = [
    "collector_pb2",
    "collector_pb2_grpc",
    "feed_pb2",
    "feed_pb2_grpc",
    "producer_pb2",
    "producer_pb2_grpc",
    "registry_pb2",
    "registry_pb2_grpc",
]
