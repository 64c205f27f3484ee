"""The gRPC door (package streamhouse.v1): its proto, the code generated from it
(tools/grpc-codegen; checked in, a test regenerates it byte for byte), and the servicers that
turn its calls into engine calls."""
