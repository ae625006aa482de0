#if canImport(Glibc)
import Glibc
#endif

/// How a test kills the gateway at one exact step of a take-back, to prove that a crash there
/// loses no session: `OPENCLAW_GATEWAY_TEST_FAULT_FILE` names a file holding a point's name. The
/// file is removed before the kill, so the restart that follows runs through. Without the
/// variable, or with the file absent, nothing happens.
enum FaultInjection {
    enum Point: String {
        /// Every session adopted, none reading, the carriers still in the store.
        case takeBackAdopted = "take-back-adopted"
    }

    static func killIfAsked(at point: Point) {
        guard let path = getenv("OPENCLAW_GATEWAY_TEST_FAULT_FILE"), let file = fopen(path, "r") else { return }
        var line = [CChar](repeating: 0, count: 64)
        let read = fgets(&line, Int32(line.count), file) != nil
        fclose(file)
        let text = String(decoding: line.prefix { $0 != 0 && $0 != 10 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        guard read, text == point.rawValue, unlink(path) == 0 else { return }
        kill(getpid(), SIGKILL)
    }
}
