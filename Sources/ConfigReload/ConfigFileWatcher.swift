import Dispatch

#if canImport(Glibc)
import Glibc
#endif

/// Tells when the config file changed, once the change has settled: an inotify watch on the
/// file's directory (editors write a temporary file and rename it over the old one, which a watch
/// on the file itself would lose), filtered by the file's name, and quiet for `debounceMs` before
/// it reports. Events come from a Dispatch read source: no thread of its own, no polling.
public enum ConfigFileWatcher {
    /// Each element: the file was written, replaced, created or removed, and nothing more
    /// happened to it for `debounceMs`. nil when the directory cannot be watched (the reason is
    /// in `failure`).
    public static func changes(of path: String, debounceMs: Int) -> (changes: AsyncStream<Void>?, failure: String?) {
        let slash = path.lastIndex(of: "/")
        let directory = slash.map { $0 == path.startIndex ? "/" : String(path[..<$0]) } ?? "."
        let name = slash.map { String(path[path.index(after: $0)...]) } ?? path
        let fd = inotify_init1(Int32(IN_CLOEXEC | IN_NONBLOCK))
        guard fd >= 0 else { return (nil, "inotify_init1: \(String(cString: strerror(errno)))") }
        let mask = UInt32(IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | IN_CREATE | IN_DELETE)
        guard inotify_add_watch(fd, directory, mask) >= 0 else {
            let reason = String(cString: strerror(errno))
            close(fd)
            return (nil, "cannot watch \(directory): \(reason)")
        }
        let queue = DispatchQueue(label: "openclaw-gateway.config-watch")
        let watch = Watch(fd: fd, name: name, queue: queue, debounce: .milliseconds(debounceMs))
        let stream = AsyncStream<Void>(bufferingPolicy: .bufferingNewest(1)) { continuation in
            watch.start { continuation.yield(()) }
            continuation.onTermination = { _ in watch.cancel() }
        }
        return (stream, nil)
    }

    /// inotify_event: wd, mask, cookie, len (4 bytes each), then `len` bytes of NUL-padded name.
    static func names(in buffer: UnsafeRawBufferPointer) -> [String] {
        var names: [String] = []
        var offset = 0
        while offset + 16 <= buffer.count {
            let length = Int(buffer.loadUnaligned(fromByteOffset: offset + 12, as: UInt32.self))
            let start = offset + 16
            guard start + length <= buffer.count else { break }
            let bytes = buffer[start..<(start + length)].prefix { $0 != 0 }
            names.append(String(decoding: bytes, as: UTF8.self))
            offset = start + length
        }
        return names
    }
}

/// The read source and the settle timer; touched only on `queue` (hence @unchecked Sendable:
/// Dispatch's types are not marked Sendable on Linux).
private final class Watch: @unchecked Sendable {
    let fd: Int32
    let name: String
    let queue: DispatchQueue
    let debounce: DispatchTimeInterval
    private var source: DispatchSourceRead?
    private var pending: DispatchWorkItem?

    init(fd: Int32, name: String, queue: DispatchQueue, debounce: DispatchTimeInterval) {
        self.fd = fd
        self.name = name
        self.queue = queue
        self.debounce = debounce
    }

    func start(onChange: @escaping @Sendable () -> Void) {
        queue.async { [self] in
            let source = DispatchSource.makeReadSource(fileDescriptor: fd, queue: queue)
            source.setEventHandler { [self] in
                guard drain() else { return }
                // Settle: every new event restarts the wait.
                pending?.cancel()
                let item = DispatchWorkItem(block: onChange)
                pending = item
                queue.asyncAfter(deadline: .now() + debounce, execute: item)
            }
            source.setCancelHandler { [fd] in close(fd) }
            self.source = source
            source.resume()
        }
    }

    /// Reads every queued event; whether one was about our file.
    private func drain() -> Bool {
        var ours = false
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            guard n > 0 else { break }
            ours = ours || buffer.withUnsafeBytes { ConfigFileWatcher.names(in: UnsafeRawBufferPointer(rebasing: $0[0..<n])) }.contains(name)
        }
        return ours
    }

    func cancel() {
        queue.async { [self] in
            pending?.cancel()
            source?.cancel()
            source = nil
        }
    }
}
