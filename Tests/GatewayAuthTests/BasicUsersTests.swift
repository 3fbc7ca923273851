import Foundation
import GatewayAuth
import GatewayConfig
import NIOCore
import NIOPosix
import Synchronization
import Testing
import TestSupport

/// HTTP Basic passwords: crypt(3) hashes checked against reference vectors from other implementations, the
/// methods refused, the htpasswd file, credentials parsing, and the checks' bound and cache.
@Suite struct BasicUsersTests {
    // "correct horse" at bcrypt cost 4 (cheap, for tests); the others from OpenSSL and Openwall's test vectors.
    static let bcrypt = "$2y$04$abcdefghijklmnopqrstuujydOTSfIH/d5oUHpsygqV5X9xJLQc6e"

    @Test func referenceHashesVerify() {
        // Openwall crypt_blowfish's vector, and `openssl passwd -6/-5` (independent implementations).
        #expect(PasswordHash.verify("U*U", against: "$2a$05$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW"))
        #expect(
            PasswordHash.verify(
                "correct horse", against: "$6$saltsalt$hRM5XZ86KXEw9UOmjigeVqFgULtFB2sgpC9lXQDfMib3Zgw7mEiUvBJI2EplzfAqxL5Vvwp2scFtv/uamSo5z0"))
        #expect(PasswordHash.verify("correct horse", against: Self.bcrypt))
        #expect(!PasswordHash.verify("correct horsE", against: Self.bcrypt))
        #expect(!PasswordHash.verify("correct horse\0extra", against: Self.bcrypt), "a NUL must not cut the password short")
        #expect(!PasswordHash.verify("U*U", against: "$2a$05$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeX"))
    }

    @Test func madeHashesVerifyAndDiffer() throws {
        let first = try #require(PasswordHash.make("s3cret pass", cost: 4))
        let second = try #require(PasswordHash.make("s3cret pass", cost: 4))
        #expect(first.hasPrefix("$2b$04$") && first.count == 60)
        #expect(first != second, "each hash has its own salt")
        #expect(PasswordHash.verify("s3cret pass", against: first) && PasswordHash.verify("s3cret pass", against: second))
        #expect(!PasswordHash.verify("s3cret pas", against: first))
        #expect(PasswordHash.problem(with: first) == nil)
    }

    @Test func weakAndMalformedHashesAreRefused() {
        for weak in ["$1$saltsalt$4px9i58NU2Z2/vZOUlGjq.", "$apr1$saltsalt$Q17bmANhIA7pctgRGqF/S0", "saXJ2P7lOdVnI", "{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=", "$5$saltsalt$myjXcpMpE2Ofk7fj9hqyNYSn6lmWG4Mqnjx.KIRRr4/"] {
            #expect(PasswordHash.problem(with: weak) != nil, "\(weak)")
        }
        #expect(PasswordHash.problem(with: "$2y$04$tooshort") != nil)
        #expect(PasswordHash.problem(with: "$2y$04$abcdefghijklmnopqrstuu") != nil, "a salt without its hash")
        #expect(PasswordHash.problem(with: "$6$saltsalt") != nil && PasswordHash.problem(with: "$6$saltsalt$") != nil)
        #expect(PasswordHash.problem(with: "$7$CU..../....pc501KNuky3W0A/m.Lg570$hcYbN0ZQP8wsE2kGQ7b85py1JV/0qUV1tLqJIOK4vIC") == nil)
        #expect(PasswordHash.problem(with: Self.bcrypt) == nil)
    }

    @Test func credentialsParsing() {
        let parsed = BasicUsers.credentials(Data("ops:pa:ss word".utf8).base64EncodedString())
        #expect(parsed?.username == "ops" && parsed?.password == "pa:ss word", "the user name ends at the first colon")
        #expect(BasicUsers.credentials(Data("ünï:cødé".utf8).base64EncodedString())?.password == "cødé")
        #expect(BasicUsers.credentials(Data(":empty-user".utf8).base64EncodedString())?.username == "")
        #expect(BasicUsers.credentials(Data("no-colon".utf8).base64EncodedString()) == nil)
        #expect(BasicUsers.credentials("not base64!") == nil)
        #expect(BasicUsers.credentials(Data("ops:pass\0word".utf8).base64EncodedString()) == nil)
        #expect(BasicUsers.credentials(Data([0x6F, 0x3A, 0xFF]).base64EncodedString()) == nil, "not UTF-8")
    }

    @Test func htpasswdFile() throws {
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("htpasswd-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: file) }
        try "# operators\n\nalice:\(Self.bcrypt)\nbob:$6$saltsalt$hRM5XZ86KXEw9UOmjigeVqFgULtFB2sgpC9lXQDfMib3Zgw7mEiUvBJI2EplzfAqxL5Vvwp2scFtv/uamSo5z0:comment\n".write(
            to: file, atomically: true, encoding: .utf8)
        var config = BasicAuthConfig()
        config.htpasswdFile = file.path
        config.users = [BasicAuthConfig.User(username: "carol", passwordHash: Self.bcrypt, scopes: ["admin"])]
        #expect(try BasicUsers.load(config).count == 3)

        let clashError = thrownError { _ = try BasicUsers.load(config, otherConsumers: ["bob"]) }
        let clash = try #require(clashError)
        #expect("\(clash)".contains("line 4: duplicate consumer id \"bob\""), "\(clash)")

        try "alice:\(Self.bcrypt)\nmallory:$apr1$saltsalt$Q17bmANhIA7pctgRGqF/S0\n".write(to: file, atomically: true, encoding: .utf8)
        let weakError = thrownError { _ = try BasicUsers.load(config) }
        let weak = try #require(weakError)
        #expect("\(weak)".hasPrefix("auth.basic.htpasswd_file: ") && "\(weak)".contains("line 2 (mallory)"), "\(weak)")

        try "carol:\(Self.bcrypt)\n".write(to: file, atomically: true, encoding: .utf8)
        let twiceError = thrownError { _ = try BasicUsers.load(config) }
        let twice = try #require(twiceError)
        #expect("\(twice)".contains("duplicate consumer id \"carol\""), "\(twice)")

        config.htpasswdFile = file.path + ".missing"
        let missingError = thrownError { _ = try BasicUsers.load(config) }
        let missing = try #require(missingError)
        #expect("\(missing)".contains("cannot be read"))
    }

    @Test func checksRunOnThePoolAndAreRemembered() async throws {
        var config = BasicAuthConfig()
        config.users = [BasicAuthConfig.User(username: "ops", passwordHash: Self.bcrypt, scopes: ["admin"])]
        config.maxPendingChecks = 1
        let users = try BasicUsers.load(config)
        let loop = MultiThreadedEventLoopGroup.singleton.next()
        let right = BasicUsers.Credentials(username: "ops", password: "correct horse")

        #expect(users.remembered(right) == nil)
        // Both calls on the loop: the first check's completion (which frees its slot) cannot run in between.
        let (first, second) = try await loop.submit { (users.check(right, from: "10.0.0.1", on: loop), users.check(right, from: "10.0.0.1", on: loop)) }.get()
        #expect(second == nil, "max_pending_checks is 1")
        let identity = try await #require(first).get()
        #expect(identity?.method == .basic && identity?.subject == "ops" && identity?.scopes == ["admin"])
        #expect(users.remembered(right) == identity)

        let wrong = try await loop.submit { users.check(BasicUsers.Credentials(username: "ops", password: "correct horsE"), from: "10.0.0.1", on: loop) }.get()
        #expect(try await #require(wrong).get() == nil)
        // An unknown user is checked against a real hash (here: ops's), and never admitted, even with ops's password.
        let stranger = try await loop.submit { users.check(BasicUsers.Credentials(username: "root", password: "correct horse"), from: "10.0.0.1", on: loop) }.get()
        #expect(try await #require(stranger).get() == nil)
        #expect(users.remembered(BasicUsers.Credentials(username: "root", password: "correct horse")) == nil)
        #expect(users.remembered(BasicUsers.Credentials(username: "ops", password: "correct horsE")) == nil)
    }

    /// Monotonic microseconds the test moves by hand.
    final class ManualClock: Sendable {
        let micros = Atomic<Int64>(0)
        func set(seconds: Double) { micros.store(Int64(seconds * 1_000_000), ordering: .relaxed) }
        var read: @Sendable () -> Int64 { { self.micros.load(ordering: .relaxed) } }
    }

    // max_failures: failures at 1 s, 2 s and 9 s (limit 3, window 10 s) block the address until the 1 s one
    // leaves the window at 11 s; other addresses are not touched; the table stays bounded.
    @Test func failuresBlockAnAddressForTheWindow() {
        let clock = ManualClock()
        let throttle = FailedLoginThrottle(limit: 3, windowSeconds: 10, maxAddresses: 4, clock: clock.read)
        for second in [1.0, 2.0, 9.0] {
            #expect(throttle.blockedFor("10.0.0.1") == nil, "before the failure at \(second) s")
            clock.set(seconds: second)
            throttle.recordFailure("10.0.0.1")
        }
        #expect(throttle.blockedFor("10.0.0.1") == 2_000_000)
        #expect(throttle.blockedFor("10.0.0.2") == nil)
        clock.set(seconds: 10.999)
        #expect(throttle.blockedFor("10.0.0.1") == 1_000)
        clock.set(seconds: 11)
        #expect(throttle.blockedFor("10.0.0.1") == nil)
        throttle.recordFailure("10.0.0.1")
        #expect(throttle.blockedFor("10.0.0.1") == 1_000_000, "blocked again until the 2 s failure leaves")
        clock.set(seconds: 30)
        #expect(throttle.blockedFor("10.0.0.1") == nil)
        #expect(throttle.trackedAddresses == 0, "an address whose failures all left is forgotten")

        for host in 1...10 { throttle.recordFailure("192.0.2.\(host)") }
        #expect(throttle.trackedAddresses <= 4)
        #expect(throttle.trackedAddresses >= 1)
    }
}
