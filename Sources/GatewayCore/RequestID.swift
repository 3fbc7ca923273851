#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Request IDs: kept from the client when well-formed, otherwise freshly generated.
public enum RequestID {
    /// 1-128 characters of `[A-Za-z0-9._-]`: safe in logs, headers and JSON without escaping.
    public static func isValid(_ id: some StringProtocol) -> Bool {
        let bytes = id.utf8
        guard !bytes.isEmpty, bytes.count <= 128 else { return false }
        return bytes.allSatisfy { byte in
            switch byte {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
                UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "-"):
                return true
            default:
                return false
            }
        }
    }

    /// 32 lowercase hex digits (128 random bits), the same shape as a W3C trace id.
    ///
    /// Drawn from a per-thread xoshiro256** generator seeded from the system's entropy: ids are unique and
    /// unguessable in practice, and no request pays for a `getrandom` system call. They identify
    /// requests; they are not secrets and are not used as such.
    public static func generate() -> String {
        ThreadRandom.withCurrent { random in generate(high: random.next(), low: random.next()) }
    }

    /// 64 random bits, never all zero (invalid): a W3C span (parent) id.
    public static func generateSpanBits() -> UInt64 {
        var value: UInt64 = 0
        while value == 0 { value = ThreadRandom.next() }
        return value
    }

    /// A span id as its 16 lowercase hex digits.
    public static func spanID(_ bits: UInt64) -> String {
        String(unsafeUninitializedCapacity: 16) { buffer in
            writeHex(bits, to: buffer, at: 0)
            return 16
        }
    }

    /// Writes `value` as 16 lowercase hex digits at `offset`.
    public static func writeHex(_ value: UInt64, to buffer: UnsafeMutableBufferPointer<UInt8>, at offset: Int) {
        for index in 0..<16 { buffer[offset + index] = hexDigit(value >> (60 - UInt64(index) * 4)) }
    }

    public static func generate(using generator: inout some RandomNumberGenerator) -> String {
        generate(high: generator.next(), low: generator.next())
    }

    private static func generate(high: UInt64, low: UInt64) -> String {
        String(unsafeUninitializedCapacity: 32) { buffer in
            writeHex(high, to: buffer, at: 0)
            writeHex(low, to: buffer, at: 16)
            return 32
        }
    }

    @inline(__always)
    private static func hexDigit(_ value: UInt64) -> UInt8 {
        let nibble = UInt8(truncatingIfNeeded: value & 0xF)
        return nibble < 10 ? UInt8(ascii: "0") + nibble : UInt8(ascii: "a") + nibble - 10
    }
}

/// Random draws for "this share of requests" (mirroring, injected faults), from the per-thread generator: no
/// system call, no lock.
public enum Chance {
    /// True with probability `share` (0-1); always for 1 or more, never for 0 or less.
    public static func happens(_ share: Double) -> Bool {
        if share >= 1 { return true }
        if share <= 0 { return false }
        return Double(ThreadRandom.next() >> 11) / Double(1 << 53) < share
    }
}

/// xoshiro256** (Blackman and Vigna), one instance per thread so no lock or atomic is needed.
final class ThreadRandom {
    private var s0: UInt64, s1: UInt64, s2: UInt64, s3: UInt64

    private init() {
        var system = SystemRandomNumberGenerator()
        repeat {
            (s0, s1, s2, s3) = (system.next(), system.next(), system.next(), system.next())
        } while s0 | s1 | s2 | s3 == 0
    }

    func next() -> UInt64 {
        let result = rotateLeft(s1 &* 5, by: 7) &* 9
        let t = s1 << 17
        s2 ^= s0
        s3 ^= s1
        s1 ^= s2
        s0 ^= s3
        s2 ^= t
        s3 = rotateLeft(s3, by: 45)
        return result
    }

    @inline(__always)
    private func rotateLeft(_ value: UInt64, by amount: UInt64) -> UInt64 { value << amount | value >> (64 - amount) }

    private static let slot = ThreadSlot()

    /// This thread's generator, lent without a retain (two draws per request: the request id and the span id).
    static func withCurrent<Result>(_ body: (ThreadRandom) -> Result) -> Result { slot.withObject(ThreadRandom.init, body) }

    /// One draw from this thread's generator.
    static func next() -> UInt64 { withCurrent { $0.next() } }
}
