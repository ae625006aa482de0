import NIOConcurrencyHelpers
import NIOCore
import NIOEmbedded
import Testing

@testable import GatewayServer

/// ConnectionRegistry with embedded channels: the cap in admission order, and when a listener may
/// close (every accepted connection set up, or closed, or the wait is over).
@Suite struct ConnectionRegistryTests {
    @Test func theCapIsJudgedInAdmissionOrder() throws {
        let registry = ConnectionRegistry()
        let channels = (0..<4).map { _ in EmbeddedChannel() }
        for channel in channels {
            registry.admit(channel, maxConnections: 3)
        }
        #expect(channels.map(registry.isBeyondCap) == [false, false, false, true])
        #expect(registry.count == 4)
        // The one beyond the cap counts until its 503 is sent and it closes; then a connection
        // that closes makes room for the next one admitted.
        let next = EmbeddedChannel()
        registry.admit(next, maxConnections: 3)
        #expect(registry.isBeyondCap(next))
        for channel in [channels[3], next, channels[0]] {
            try channel.close().wait()
            channel.embeddedEventLoop.run()
        }
        let last = EmbeddedChannel()
        registry.admit(last, maxConnections: 3)
        #expect(registry.count == 3)
        #expect(!registry.isBeyondCap(last))
    }

    @Test func aListenerWaitsUntilEveryAcceptedConnectionIsSetUpOrClosed() throws {
        let registry = ConnectionRegistry()
        let loop = EmbeddedEventLoop()
        let first = EmbeddedChannel(loop: loop)
        let second = EmbeddedChannel(loop: loop)
        registry.admit(first, maxConnections: 10)
        registry.admit(second, maxConnections: 10)
        let settled = registry.whenAcceptedAreSetUp(on: loop, within: .seconds(60))
        let done = NIOLockedValueBox(false)
        settled.whenSuccess { done.withLockedValue { $0 = true } }
        loop.run()
        #expect(!done.withLockedValue { $0 })
        registry.setUp(first)
        loop.run()
        #expect(!done.withLockedValue { $0 })
        try second.close().wait()  // a setup that failed: NIO closes the connection
        loop.run()
        #expect(done.withLockedValue { $0 })
        #expect(registry.count == 1)
    }

    @Test func withNothingBeingSetUpTheListenerClosesAtOnce() {
        let registry = ConnectionRegistry()
        let loop = EmbeddedEventLoop()
        let restored = EmbeddedChannel(loop: loop)
        registry.add(restored)  // a handed-over session is never "being set up"
        let done = NIOLockedValueBox(false)
        registry.whenAcceptedAreSetUp(on: loop, within: .seconds(60)).whenSuccess { done.withLockedValue { $0 = true } }
        #expect(done.withLockedValue { $0 })
        #expect(!registry.isBeyondCap(restored))
    }

    @Test func aSetupThatNeverEndsHoldsTheListenerOnlyUntilTheLimit() {
        let registry = ConnectionRegistry()
        let loop = EmbeddedEventLoop()
        registry.admit(EmbeddedChannel(loop: loop), maxConnections: 10)
        let done = NIOLockedValueBox(false)
        registry.whenAcceptedAreSetUp(on: loop, within: .milliseconds(100)).whenSuccess { done.withLockedValue { $0 = true } }
        loop.advanceTime(by: .milliseconds(99))
        #expect(!done.withLockedValue { $0 })
        loop.advanceTime(by: .milliseconds(1))
        #expect(done.withLockedValue { $0 })
    }

    @Test func setUpNoticeReportsActivationAndLeavesThePipeline() throws {
        let registry = ConnectionRegistry()
        let channel = EmbeddedChannel()
        registry.admit(channel, maxConnections: 10)
        try channel.pipeline.syncOperations.addHandler(SetUpNotice(connections: registry))
        let done = NIOLockedValueBox(false)
        registry.whenAcceptedAreSetUp(on: channel.embeddedEventLoop, within: .seconds(60)).whenSuccess { done.withLockedValue { $0 = true } }
        #expect(!done.withLockedValue { $0 })
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()  // becomes active
        #expect(done.withLockedValue { $0 })
        #expect(throws: ChannelPipelineError.self) {
            try channel.pipeline.syncOperations.handler(type: SetUpNotice.self)
        }
    }
}
