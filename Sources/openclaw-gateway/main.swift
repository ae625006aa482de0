import ConfigReload
import Dispatch
import GatewayLock
import RestartHandover
import Systemd

#if canImport(Glibc)
import Glibc
#endif

// First, before anything can start a thread: take what systemd passed (LISTEN_*). This unsets the
// variables, which is only safe while the process has a single thread.
// What a restart left in the fd store comes back beside the listeners: the handover's, not the lock's.
let (activation, stored) = RestartHandover.separateStored(SystemdActivation.takeFromEnvironment())
// SIGHUP (a reload) caught from here on, with its sender: one asked before the gateway reads it
// waits instead of ending the process.
Hangups.installEarly()

// Still on the one and only thread: flags, configuration and the lock (the listener). A duplicate
// is refused here, before any event loop, thread pool or task exists. This code is synchronous on
// purpose: an `await` at top level would make this an async main, which runs on Swift's thread pool.
let gateway = GatewayCommandLine.prepare(
    arguments: Array(CommandLine.arguments.dropFirst()), activation: activation, stored: stored)

// Only now the threads: SwiftNIO's event loops, which serve the listeners at once, then Swift
// concurrency, which runs the lifecycle.
let serving = gateway.serve()
Task.detached {
    exit(await serving.run())
}
dispatchMain()
