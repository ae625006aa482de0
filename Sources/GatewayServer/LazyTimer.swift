import NIOCore

/// A one-shot timer on an event loop whose cancel is a flag, not a search.
///
/// SwiftNIO's `SelectableEventLoop` cancels a scheduled task by searching its loop's whole timer
/// heap (`removeFirst(where:)`). Each session has a ticker and a handshake timer, so every
/// cancel cost O(sessions): every connect (the handshake timer) and every close (the ticker)
/// paid it, and freezing 10,000 sessions for a restart spent a quarter of its time there. This
/// timer is only marked when cancelled; the loop's task finds the mark when it fires and does
/// nothing. Until then the loop keeps that task, a few hundred bytes, so `body` must hold what
/// it needs weakly (``Weak``): a closed connection is not kept alive for its timers.
///
/// Used on its loop only, as the handlers that own one are.
struct LazyTimer {
    private final class Mark {
        var cancelled = false
    }

    private var mark: Mark?

    /// Runs `body` on `loop` after `delay`, unless ``cancel()`` or another `schedule` comes first.
    mutating func schedule(in delay: TimeAmount, on loop: EventLoop, _ body: @escaping () -> Void) {
        cancel()
        let mark = Mark()
        self.mark = mark
        let bound = NIOLoopBound((mark, body), eventLoop: loop)
        loop.scheduleTask(in: delay) {
            let (mark, body) = bound.value
            guard !mark.cancelled else { return }
            mark.cancelled = true
            body()
        }
    }

    mutating func cancel() {
        mark?.cancelled = true
        mark = nil
    }

    /// Scheduled, and neither fired nor cancelled yet.
    var isPending: Bool { mark.map { !$0.cancelled } ?? false }
}

/// A weak reference, for what a ``LazyTimer``'s task holds until its deadline.
struct Weak<Object: AnyObject> {
    weak var value: Object?

    init(_ value: Object) {
        self.value = value
    }
}
