"""Follow one collector's assignment feed with Python grpcio, by rules C1-C3, and print the applied set.

A gRPC peer that is not ours: its stubs are generated from proto/ by grpcio-tools when it starts. It assembles
chunks per generation and applies a snapshot only when the complete chunk arrived, every chunk carried the same
epoch and generation, indices ran 0..n-1, the counts match and no producer id came twice (C1); anything else
discards the partial snapshot (C2); within an epoch only a newer generation applies (C3). Once it has applied a
snapshot with at least --min-producers producers it prints {"epoch", "generation", "ids"} as JSON and exits 0.
"""

import argparse
import json
import os
import sys
import tempfile

from grpc_tools import protoc
import grpc


def generate_stubs(proto_root, out_dir):
    files = [os.path.join("roster/v1", f) for f in sorted(os.listdir(os.path.join(proto_root, "roster/v1"))) if f.endswith(".proto")]
    well_known = os.path.join(os.path.dirname(protoc.__file__), "_proto")
    code = protoc.main(["protoc", f"-I{proto_root}", f"-I{well_known}", f"--python_out={out_dir}", f"--grpc_python_out={out_dir}", *files])
    if code != 0:
        sys.exit(f"grpc_tools.protoc failed with {code}")
    sys.path.insert(0, out_dir)


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--proto-root", required=True)
    parser.add_argument("--server", required=True, help="host:port")
    parser.add_argument("--collector", required=True)
    parser.add_argument("--min-producers", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=60.0)
    parser.add_argument("--token-file", help="send the bearer token in this file (a server with --auth-tokens)")
    parser.add_argument("--ca", help="PEM CA bundle: call the server over TLS, verifying its certificate")
    parser.add_argument("--cert", help="PEM client certificate for mutual TLS (with --ca and --key)")
    parser.add_argument("--key", help="PEM private key of --cert")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as out_dir:
        generate_stubs(args.proto_root, out_dir)
        from roster.v1 import feed_pb2, feed_pb2_grpc  # noqa: E402  (generated above)

        if args.ca:
            read = lambda path: open(path, "rb").read() if path else None  # noqa: E731
            credentials = grpc.ssl_channel_credentials(
                root_certificates=read(args.ca), private_key=read(args.key), certificate_chain=read(args.cert)
            )
            channel = grpc.secure_channel(args.server, credentials)
        else:
            channel = grpc.insecure_channel(args.server)
        stub = feed_pb2_grpc.AssignmentFeedStub(channel)
        request = feed_pb2.WatchRequest(collector_id=args.collector)
        applied = None  # (epoch, generation, ids)
        partial = None
        discards = 0
        metadata = ()
        if args.token_file:
            with open(args.token_file) as f:
                metadata = (("authorization", "Bearer " + f.read().strip()),)
        for response in stub.Watch(request, timeout=args.timeout, metadata=metadata):
            kind = response.WhichOneof("frame")
            if kind != "chunk":
                if partial is not None:  # C2: interleaved frame
                    partial, discards = None, discards + 1
                continue
            chunk = response.chunk
            if partial is not None and (partial["epoch"], partial["generation"]) != (chunk.epoch, chunk.generation):
                partial, discards = None, discards + 1  # C2: another generation before the complete chunk
            if partial is None:
                if chunk.index != 0:
                    discards += 1  # C2: gap
                    continue
                partial = {"epoch": chunk.epoch, "generation": chunk.generation, "next": 0, "ids": [], "seen": set()}
            if chunk.index != partial["next"]:
                partial, discards = None, discards + 1  # C2: gap or repeat
                continue
            duplicate = False
            for producer in chunk.producers:
                if producer.id in partial["seen"]:
                    duplicate = True
                partial["seen"].add(producer.id)
                partial["ids"].append(producer.id)
            if duplicate:
                partial, discards = None, discards + 1  # C2: duplicate producer
                continue
            partial["next"] += 1
            if not chunk.complete:
                continue
            done, partial = partial, None
            if chunk.chunk_count != done["next"] or chunk.producer_count != len(done["ids"]):
                discards += 1  # C2: counts do not match
                continue
            # C3: within one epoch only a newer generation applies.
            if applied and applied[0] == done["epoch"] and done["generation"] <= applied[1]:
                continue
            applied = (done["epoch"], done["generation"], sorted(done["ids"]))
            if len(applied[2]) >= args.min_producers:
                print(json.dumps({"epoch": applied[0], "generation": applied[1], "ids": applied[2], "discards": discards}))
                channel.close()
                return 0
    sys.exit("the feed ended before a large enough snapshot was applied")


if __name__ == "__main__":
    sys.exit(main())
