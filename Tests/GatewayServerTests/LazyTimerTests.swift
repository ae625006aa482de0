import NIOCore
import NIOEmbedded
import NIOPosix
import Testing

@testable import GatewayServer

/// LazyTimer on an embedded loop, whose clock the test moves: it fires once, after its delay; a
/// cancel or a new schedule stops the old one; its pending task keeps nothing alive.
@Suite struct LazyTimerTests {
    final class Owner {
        var fired: [String] = []
    }

    @Test func itFiresOnceAfterItsDelay() {
        let loop = EmbeddedEventLoop()
        let owner = Owner()
        let weak = Weak(owner)
        var timer = LazyTimer()
        timer.schedule(in: .seconds(1), on: loop) { weak.value?.fired.append("a") }
        #expect(timer.isPending)
        loop.advanceTime(by: .milliseconds(999))
        #expect(owner.fired.isEmpty)
        loop.advanceTime(by: .milliseconds(1))
        #expect(owner.fired == ["a"] && !timer.isPending)
        loop.advanceTime(by: .seconds(5))
        #expect(owner.fired == ["a"])
    }

    @Test func aCancelledOrReplacedTimerDoesNothing() {
        let loop = EmbeddedEventLoop()
        let owner = Owner()
        let weak = Weak(owner)
        var timer = LazyTimer()
        timer.schedule(in: .seconds(1), on: loop) { weak.value?.fired.append("cancelled") }
        timer.cancel()
        #expect(!timer.isPending)
        timer.schedule(in: .seconds(1), on: loop) { weak.value?.fired.append("replaced") }
        timer.schedule(in: .seconds(2), on: loop) { weak.value?.fired.append("last") }
        loop.advanceTime(by: .seconds(3))
        #expect(owner.fired == ["last"])
    }

    @Test func itsPendingTaskDoesNotKeepItsOwnerAlive() {
        let loop = EmbeddedEventLoop()
        var owner: Owner? = Owner()
        weak let gone = owner
        var timer = LazyTimer()
        let weak = Weak(owner!)
        timer.schedule(in: .seconds(1), on: loop) { weak.value?.fired.append("a") }
        owner = nil
        #expect(gone == nil)
        #expect(timer.isPending)
        loop.advanceTime(by: .seconds(2))  // fires and finds nobody
        #expect(!timer.isPending)
    }

    /// What it is for: on a real loop, with one timer per session pending, cancelling all of them
    /// is a flag each. NIO's own cancel searches the loop's timer heap from the front: 20,000
    /// cancelled newest first took 8.9 s in a debug build (0.19 s oldest first), so the bound
    /// below fails if the search comes back.
    @Test func cancellingTwentyThousandPendingTimersIsCheap() throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        defer { try? group.syncShutdownGracefully() }
        let loop = group.next()
        let elapsed = try loop.submit { () -> Duration in
            var timers = Array(repeating: LazyTimer(), count: 20_000)
            for index in timers.indices { timers[index].schedule(in: .seconds(60), on: loop) {} }
            let started = ContinuousClock.now
            for index in timers.indices.reversed() { timers[index].cancel() }
            let elapsed = ContinuousClock.now - started
            #expect(timers.allSatisfy { !$0.isPending })
            return elapsed
        }.wait()
        #expect(elapsed < .milliseconds(100), "cancelling 20,000 timers took \(elapsed)")
    }
}
