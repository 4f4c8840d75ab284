// The policy's errors are the configuration errors of host/config/errors.ts.
// This name stays only for host/daemon/compiler.ts, which another change owns
// at the moment; import ConfigError from host/config/errors.ts instead.
export { ConfigError as PolicyError } from "../config/errors.js";
