import GatewayLock

#if canImport(Glibc)
import Glibc
#endif

// First, before anything can start a thread: take what systemd passed (LISTEN_*). This unsets the
// variables, which is only safe while the process has a single thread.
let activation = SystemdActivation.takeFromEnvironment()

let status = await GatewayCommandLine.main(arguments: Array(CommandLine.arguments.dropFirst()), activation: activation)
exit(status)
