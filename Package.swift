// swift-tools-version:6.0
import PackageDescription

let package = Package(
    name: "openclaw-gateway",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "openclaw-gateway", targets: ["openclaw-gateway"])
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
    ],
    targets: [
        // libsystemd's API: sd-daemon (socket activation, sd_notify, the watchdog, the fd store)
        // and sd-bus (our unit's pending job), from libsystemd-dev. The module map has no `link`:
        // CSystemdLoader opens libsystemd.so.0 when first needed, so that a process systemd does
        // not run (a refused duplicate above all) never maps it and its six libraries.
        .systemLibrary(
            name: "CSystemd",
            providers: [.apt(["libsystemd-dev"])]
        ),
        // dlopen(libsystemd.so.0) and one wrapper per function used; sd-bus's variadic calls too.
        .target(name: "CSystemdLoader", dependencies: ["CSystemd"]),
        // Everything that talks to systemd, one file per feature as go-systemd cuts it: the
        // activation environment (Activation), sd_notify (Notify), the watchdog (Watchdog), the fd
        // store (FileDescriptorStore), our unit's pending job over D-Bus (Job), our unit from the
        // cgroup (Unit) and the journal (Journal). The one importer of the libsystemd loader.
        .target(
            name: "Systemd",
            dependencies: [
                "CSystemdLoader",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        // The lock: where the listening sockets come from (systemd or our own bind), and the one
        // error type for a port that cannot be had. Knows nothing about HTTP or WebSockets.
        .target(
            name: "GatewayLock",
            dependencies: [
                "Systemd",
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // pidfd_open(2) and memfd_create(2), which Swift cannot reach, and the netlink listener query.
        .target(name: "CProcess"),
        // Who holds a port (from /proc), the socket unit behind PID 1, ending a holder (--force).
        .target(name: "PortHolder", dependencies: ["CProcess"]),
        // IP addresses and CIDR ranges (gateway.trustedProxies), no dependencies.
        .target(name: "IPRange"),
        // Flags, environment and config file -> one resolved configuration.
        .target(
            name: "GatewayConfig",
            dependencies: ["GatewayLock", "IPRange"]
        ),
        // The OpenClaw protocol v4 subset: frames and the per-connection session logic (no I/O).
        .target(name: "GatewayProtocol"),
        // HTTP + WebSocket on listening fds it is handed; it never binds or knows their origin.
        .target(
            name: "GatewayServer",
            dependencies: [
                "CProcess",
                "GatewayProtocol",
                "IPRange",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOWebSocket", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // Live WebSocket sessions across `systemctl restart`, through systemd's fd store.
        .target(
            name: "RestartHandover",
            dependencies: [
                "CProcess",
                "GatewayProtocol",
                "GatewayServer",
                "Systemd",
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // The gateway's life as one service: starting -> serving -> deciding -> handing over |
        // closing -> done (take back, READY; at shutdown STOPPING, systemd's job, carrier or 1012).
        .target(
            name: "GatewayLifecycle",
            dependencies: [
                "GatewayLock",
                "GatewayProtocol",
                "GatewayServer",
                "RestartHandover",
                "Systemd",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        // Reloads while running: SIGHUP and a watched file -> the configuration resolved again.
        .target(
            name: "ConfigReload",
            dependencies: [
                "CProcess",
                "GatewayConfig",
                "Systemd",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        .executableTarget(
            name: "openclaw-gateway",
            dependencies: [
                "ConfigReload",
                "GatewayLifecycle",
                "RestartHandover",
                "GatewayLock",
                "GatewayConfig",
                "GatewayProtocol",
                "GatewayServer",
                "PortHolder",
                "Systemd",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        // The bench's own WebSocket load client (not shipped).
        .executableTarget(
            name: "gateway-load",
            dependencies: [
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOWebSocket", package: "swift-nio"),
            ]
        ),
        // The bench's start-up floor: SwiftNIO + libsystemd and nothing else (not shipped).
        .executableTarget(
            name: "startup-floor",
            dependencies: [
                "CSystemdLoader",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ]
        ),
        // The bench's adopt phase of a restart: GatewayServer.restore on loopback sessions (not shipped).
        .executableTarget(
            name: "handover-adopt",
            dependencies: [
                "GatewayProtocol",
                "GatewayServer",
                "RestartHandover",
                "TestSupport",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ]
        ),
        // Real loopback sockets for the tests and handover-adopt (a listener, a client, reading until EOF).
        .target(name: "TestSupport", path: "Tests/TestSupport"),
        .testTarget(name: "GatewayLockTests", dependencies: ["GatewayLock", "Systemd", "TestSupport"]),
        .testTarget(name: "GatewayConfigTests", dependencies: ["GatewayConfig", "IPRange"]),
        .testTarget(name: "PortHolderTests", dependencies: ["PortHolder"]),
        .testTarget(name: "GatewayProtocolTests", dependencies: ["GatewayProtocol"]),
        .testTarget(
            name: "GatewayServerTests",
            dependencies: [
                "GatewayServer",
                "GatewayProtocol",
                "TestSupport",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ]),
        .testTarget(
            name: "GatewayLifecycleTests",
            dependencies: [
                "GatewayLifecycle",
                "GatewayProtocol",
                "GatewayServer",
                "RestartHandover",
                "Systemd",
                "TestSupport",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]),
        .testTarget(name: "RestartHandoverTests", dependencies: ["RestartHandover", "GatewayServer", "Systemd", "TestSupport"]),
    ],
    swiftLanguageModes: [.v6]
)
