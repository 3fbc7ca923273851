import CCrypt
import GatewayConfig

/// crypt(3) password hashes, as htpasswd files (`htpasswd -B`), `mkpasswd` and /etc/shadow write them, checked
/// and made by libxcrypt. Only slow, salted methods are accepted (`BasicAuthConfig.acceptedHashPrefixes`):
/// bcrypt, yescrypt, scrypt and SHA-512-crypt.
///
/// Checking costs what the hash's cost factor says (bcrypt cost 10: about 50-100 ms of CPU), so callers run it
/// off the event loop and remember what verified.
public enum PasswordHash {
    /// Why `hash` cannot be used, or nil when libxcrypt accepts it as a setting of an accepted method.
    public static func problem(with hash: String) -> String? {
        if let problem = BasicAuthConfig.hashProblem(hash) { return problem }
        switch crypt_checksalt(hash) {
        case CRYPT_SALT_OK: return nil
        case CRYPT_SALT_METHOD_LEGACY: return "uses a method this system's libcrypt considers legacy"
        default: return "is not a valid crypt(3) hash"
        }
    }

    /// Whether `password` hashes to `hash`. The comparison takes the same time wherever the two differ.
    public static func verify(_ password: String, against hash: String) -> Bool {
        // A NUL would end the C string early: "secret\0anything" must not verify as "secret".
        guard !password.utf8.contains(0), let computed = crypt(password, setting: hash) else { return false }
        return ConstantTime.equals(Array(computed.utf8), Array(hash.utf8))
    }

    /// A new bcrypt hash of `password` (`$2b$`, the given cost: 2^cost rounds) with a random salt from the
    /// system's generator.
    public static func make(_ password: String, cost: Int = 10) -> String? {
        var setting = [CChar](repeating: 0, count: Int(CRYPT_GENSALT_OUTPUT_SIZE))
        guard crypt_gensalt_rn("$2b$", UInt(cost), nil, 0, &setting, Int32(setting.count)) != nil else { return nil }
        let text = setting.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }
        return crypt(password, setting: String(decoding: text, as: UTF8.self))
    }

    private static func crypt(_ password: String, setting: String) -> String? {
        // crypt_data is 32 KiB: on the heap, and zeroed as crypt_rn requires.
        let data = UnsafeMutablePointer<crypt_data>.allocate(capacity: 1)
        defer { data.deallocate() }
        UnsafeMutableRawPointer(data).initializeMemory(as: UInt8.self, repeating: 0, count: MemoryLayout<crypt_data>.size)
        guard let output = crypt_rn(password, setting, data, Int32(MemoryLayout<crypt_data>.size)) else { return nil }
        let result = String(cString: output)
        // The phrase is copied inside crypt_data; do not leave it in freed memory.
        UnsafeMutableRawPointer(data).initializeMemory(as: UInt8.self, repeating: 0, count: MemoryLayout<crypt_data>.size)
        return result
    }
}
