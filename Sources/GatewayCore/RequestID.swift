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
    public static func generate() -> String {
        var generator = SystemRandomNumberGenerator()
        return generate(using: &generator)
    }

    public static func generate(using generator: inout some RandomNumberGenerator) -> String {
        let high = generator.next() as UInt64
        let low = generator.next() as UInt64
        let digits: [UInt8] = Array("0123456789abcdef".utf8)
        return String(unsafeUninitializedCapacity: 32) { buffer in
            for index in 0..<16 {
                buffer[index] = digits[Int(high >> (60 - UInt64(index) * 4) & 0xF)]
                buffer[16 + index] = digits[Int(low >> (60 - UInt64(index) * 4) & 0xF)]
            }
            return 32
        }
    }
}
