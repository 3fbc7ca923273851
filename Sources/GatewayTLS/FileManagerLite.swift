#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// File checks without Foundation (this module otherwise needs none).
enum FileManagerLite {
    static func exists(_ path: String) -> Bool { access(path, F_OK) == 0 }
    static func readable(_ path: String) -> Bool { access(path, R_OK) == 0 }
}
