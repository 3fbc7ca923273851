import CNIOBoringSSL
import NIOSSL

/// Makes a server context choose the cipher suite by its own order (strongest first) rather than the
/// client's: BoringSSL's SSL_OP_CIPHER_SERVER_PREFERENCE, which swift-nio-ssl does not expose. The context's
/// SSL_CTX is found by reflection; if a future swift-nio-ssl renames it, this returns false and the gateway
/// logs that the client's order applies (every suite offered is forward-secret AEAD either way).
enum ServerCipherOrder {
    static func apply(to context: NIOSSLContext) -> Bool {
        guard let child = Mirror(reflecting: context).children.first(where: { $0.label == "sslContext" }),
            let pointer = child.value as? OpaquePointer
        else { return false }
        SSL_CTX_set_options(pointer, UInt32(SSL_OP_CIPHER_SERVER_PREFERENCE))
        return true
    }
}
