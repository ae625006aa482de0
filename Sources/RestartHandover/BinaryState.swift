#if canImport(FoundationEssentials)
import FoundationEssentials  // Data, as ConnectionRecord keeps the undecoded bytes
#else
import Foundation
#endif

/// `openclaw-gateway-handover/2`: the ``StateRecord`` as the stopping gateway writes it since
/// 0.2.0, in a compact binary form. The clients wait while it is written and read: at 10,000
/// sessions the JSON of `/1` took 132 ms to encode and 80 ms to decode, in the middle of the
/// pause. `/1` is still read, for the state 0.1.0 hands over (``StateFile/read(_:)``).
///
/// The layout: the format's name and a newline, then the record's fields in their declared order.
/// A length or count is an unsigned LEB128 varint, any other integer a zigzagged one; a string or
/// byte string is its length and its bytes; an optional is a byte, 0 (absent) or 1, followed by the value; a list is
/// its count and its items. The reader checks every length against what is left and refuses
/// trailing bytes: a cut or foreign file is an error, never a wrong session.
enum BinaryState {
    static let format = "openclaw-gateway-handover/2"
    static let magic = Array("\(format)\n".utf8)

    static func encode(_ record: StateRecord) -> [UInt8] {
        var out = Writer()
        out.bytes.reserveCapacity(magic.count + 24 + record.connections.count * 96)
        out.bytes += magic
        out.int(record.pid)
        out.int(record.protocolVersion)
        out.optional(record.tokenDigest, Writer.string)
        out.count(record.connections.count)
        for connection in record.connections {
            out.string(connection.connId)
            out.bool(connection.connected)
            out.int(connection.seq)
            out.string(connection.peer)
            out.data(connection.undecoded)
            out.optional(connection.role, Writer.string)
            out.optional(connection.scopes) { out, scopes in
                out.count(scopes.count)
                for scope in scopes { out.string(scope) }
            }
            out.optional(connection.client) { out, client in
                for field in [client.host, client.ip, client.version, client.platform, client.deviceFamily,
                              client.modelIdentifier, client.mode, client.instanceId] {
                    out.optional(field, Writer.string)
                }
                out.int(client.ts)
            }
        }
        return out.bytes
    }

    /// True when `bytes` begin as this format does.
    static func isBinary(_ bytes: [UInt8]) -> Bool {
        bytes.starts(with: magic)
    }

    static func decode(_ bytes: [UInt8]) throws(StateFileError) -> StateRecord {
        var input = Reader(bytes: bytes, offset: magic.count)
        guard isBinary(bytes) else { throw StateFileError(description: "not \(format)") }
        let pid = try input.int()
        let protocolVersion = try input.int()
        let tokenDigest = try input.optional { input throws(StateFileError) in try input.string() }
        let count = try input.count()
        var connections: [ConnectionRecord] = []
        connections.reserveCapacity(count)
        for _ in 0..<count {
            let connId = try input.string()
            let connected = try input.bool()
            let seq = try input.int()
            let peer = try input.string()
            let undecoded = try input.byteString()
            let role = try input.optional { input throws(StateFileError) in try input.string() }
            let scopes = try input.optional { input throws(StateFileError) -> [String] in
                let n = try input.count()
                var scopes: [String] = []
                for _ in 0..<n { scopes.append(try input.string()) }
                return scopes
            }
            let client = try input.optional { input throws(StateFileError) -> ClientRecord in
                var fields: [String?] = []
                for _ in 0..<8 { fields.append(try input.optional { input throws(StateFileError) in try input.string() }) }
                return ClientRecord(
                    host: fields[0], ip: fields[1], version: fields[2], platform: fields[3], deviceFamily: fields[4],
                    modelIdentifier: fields[5], mode: fields[6], instanceId: fields[7], ts: try input.int())
            }
            connections.append(
                ConnectionRecord(
                    connId: connId, connected: connected, seq: seq, peer: peer, undecoded: undecoded, role: role,
                    scopes: scopes, client: client))
        }
        guard input.offset == bytes.count else {
            throw StateFileError(description: "\(bytes.count - input.offset) byte(s) after the last connection")
        }
        return StateRecord(
            format: format, pid: pid, protocolVersion: protocolVersion, tokenDigest: tokenDigest, connections: connections)
    }

    struct Writer {
        var bytes: [UInt8] = []

        mutating func unsigned(_ value: UInt64) {
            var value = value
            while value >= 0x80 {
                bytes.append(UInt8(truncatingIfNeeded: value) | 0x80)
                value >>= 7
            }
            bytes.append(UInt8(value))
        }

        mutating func int(_ value: Int) {
            unsigned(UInt64(bitPattern: Int64(value) << 1 ^ Int64(value) >> 63))
        }

        /// A length or count, unsigned (the reader's ``Reader/count()``).
        mutating func count(_ value: Int) { unsigned(UInt64(value)) }

        mutating func bool(_ value: Bool) { bytes.append(value ? 1 : 0) }

        mutating func string(_ value: String) {
            var value = value
            value.withUTF8 { utf8 in
                count(utf8.count)
                bytes.append(contentsOf: utf8)
            }
        }

        static func string(_ writer: inout Writer, _ value: String) { writer.string(value) }

        mutating func data(_ value: Data) {
            count(value.count)
            bytes += value
        }

        mutating func optional<T>(_ value: T?, _ write: (inout Writer, T) -> Void) {
            guard let value else { return bool(false) }
            bool(true)
            write(&self, value)
        }
    }

    struct Reader {
        let bytes: [UInt8]
        var offset: Int

        mutating func unsigned() throws(StateFileError) -> UInt64 {
            var value: UInt64 = 0
            var shift: UInt64 = 0
            while true {
                guard offset < bytes.count else { throw Self.cut }
                guard shift < 64 else { throw StateFileError(description: "an integer longer than 64 bits at byte \(offset)") }
                let byte = bytes[offset]
                offset += 1
                value |= UInt64(byte & 0x7f) << shift
                if byte < 0x80 { return value }
                shift += 7
            }
        }

        mutating func int() throws(StateFileError) -> Int {
            let raw = try unsigned()
            return Int(truncatingIfNeeded: Int64(bitPattern: raw >> 1) ^ -Int64(bitPattern: raw & 1))
        }

        /// A length or count: at most what is left, so a foreign file cannot make it allocate.
        mutating func count() throws(StateFileError) -> Int {
            let value = try unsigned()
            guard value <= UInt64(bytes.count - offset) else { throw Self.cut }
            return Int(value)
        }

        mutating func bool() throws(StateFileError) -> Bool {
            guard offset < bytes.count else { throw Self.cut }
            defer { offset += 1 }
            switch bytes[offset] {
            case 0: return false
            case 1: return true
            case let other: throw StateFileError(description: "\(other) at byte \(offset) is neither 0 nor 1")
            }
        }

        mutating func byteString() throws(StateFileError) -> Data {
            let n = try count()
            defer { offset += n }
            return Data(bytes[offset..<offset + n])
        }

        mutating func string() throws(StateFileError) -> String {
            let n = try count()
            defer { offset += n }
            return String(decoding: bytes[offset..<offset + n], as: UTF8.self)
        }

        mutating func optional<T>(_ read: (inout Reader) throws(StateFileError) -> T) throws(StateFileError) -> T? {
            try bool() ? try read(&self) : nil
        }

        static let cut = StateFileError(description: "cut short")
    }
}
