"""Send hand-encoded protobuf bytes to roster-server with Python grpcio, and print each answer as JSON.

A peer that is not ours, sending what no generated stub would: a negative number where the schema says uint32,
bytes that are not protobuf at all, an enum value the schema does not have, a field number the schema does not
have, and a message above the server's size limit. Prints a JSON object: case -> {"code", "message"}.
"""

import argparse
import json
import uuid

import grpc


def varint(n):
    """Protobuf varint; a negative number is encoded as its 64-bit two's complement (10 bytes), as int64 is."""
    if n < 0:
        n += 1 << 64
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def field_varint(number, value):
    return varint(number << 3 | 0) + varint(value)


def field_bytes(number, data):
    if isinstance(data, str):
        data = data.encode()
    return varint(number << 3 | 2) + varint(len(data)) + data


def registration(interval_field):
    return field_bytes(1, str(uuid.uuid4())) + field_bytes(2, "127.0.0.1:9100") + interval_field


def call(channel, method, body):
    rpc = channel.unary_unary(method)  # no serializers: the body goes as it is
    try:
        rpc(body, timeout=20)
        return {"code": "OK", "message": ""}
    except grpc.RpcError as e:
        return {"code": e.code().name, "message": e.details()}


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--server", required=True, help="host:port")
    parser.add_argument("--collector", required=True, help="a collector id the server knows")
    parser.add_argument("--epoch", required=True)
    args = parser.parse_args()

    register = "/roster.v1.Registry/RegisterProducer"
    report = "/roster.v1.AssignmentFeed/ReportApplied"
    big_label = field_bytes(4, field_bytes(1, "big") + field_bytes(2, "x" * (5 * 1024 * 1024)))
    report_with = lambda outcome: (  # noqa: E731
        field_bytes(1, args.collector) + field_bytes(2, args.epoch) + field_varint(3, 1) + field_varint(4, outcome)
    )
    cases = {
        "negative_interval": (register, registration(field_varint(3, -5))),
        "zero_interval": (register, registration(field_varint(3, 0))),
        "not_protobuf": (register, b"\xff\xff\xff\xff\xff\xff"),
        "truncated_protobuf": (register, registration(field_varint(3, 1000))[:-5]),
        "unknown_enum": (report, report_with(99)),
        "unknown_field": (register, registration(field_varint(3, 1000)) + field_bytes(99, "from a newer client")),
        "too_large": (register, registration(field_varint(3, 1000)) + big_label),
    }
    with grpc.insecure_channel(
        args.server, options=[("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)]
    ) as channel:
        answers = {name: call(channel, method, body) for name, (method, body) in cases.items()}
    print(json.dumps(answers, indent=1))


if __name__ == "__main__":
    main()
