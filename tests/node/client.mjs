// A Node.js client of the registry, on the TypeScript that `make generate` writes into
// gen/ts (protoc-gen-es) and Connect's gRPC transport: it resolves a path, then reads
// the ErrorInfo of a call that fails. Prints one JSON object (tests/process/test_node_client.py).
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";

import { ErrorInfoSchema } from "../../gen/ts/google/rpc/error_details_pb.js";
import { ArtifactService } from "../../gen/ts/registry/v1/artifact_service_pb.js";

const [target, key, path, missing] = process.argv.slice(2);
const transport = createGrpcTransport({
  baseUrl: `http://${target}`,
  interceptors: [
    (next) => async (request) => {
      request.header.set("authorization", `Bearer ${key}`);
      return next(request);
    },
  ],
});
const artifacts = createClient(ArtifactService, transport);

const resolved = await artifacts.resolvePath({ path }, { timeoutMs: 10000 });
let failure = null;
try {
  await artifacts.resolvePath({ path: missing }, { timeoutMs: 10000 });
} catch (thrown) {
  const error = ConnectError.from(thrown);
  const [info] = error.findDetails(ErrorInfoSchema);
  failure = {
    code: Code[error.code],
    message: error.rawMessage,
    reason: info?.reason ?? null,
    domain: info?.domain ?? null,
  };
}
console.log(
  JSON.stringify({
    artifactVersion: resolved.artifactVersion?.name ?? null,
    canonicalPath: resolved.canonicalPath,
    failure,
  }),
);
