import Foundation
import GatewayConfig
import Testing

/// Each `Fixtures/NAME.json` is checked against `Fixtures/NAME.expected`: the exact lines
/// `gateway check` prints (every diagnostic with its path, then `ok` when there are no errors).
@Suite struct FixtureTests {
    static let environment = ["GATEWAY_ADMIN_TOKEN": "t", "JWT_SECRET": "a-test-secret-of-at-least-32-bytes!!"]

    static var fixtures: [String] {
        let directory = Bundle.module.resourceURL!.appendingPathComponent("Fixtures")
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory.path)) ?? []
        return names.filter { $0.hasSuffix(".json") }.map { String($0.dropLast(5)) }.sorted()
    }

    static func url(_ name: String, _ ext: String) -> URL {
        Bundle.module.resourceURL!.appendingPathComponent("Fixtures").appendingPathComponent("\(name).\(ext)")
    }

    @Test func fixturesExist() {
        #expect(Self.fixtures.count >= 6)
    }

    @Test(arguments: fixtures)
    func diagnosticsMatchExpected(_ name: String) throws {
        let result = ConfigLoader.load(path: Self.url(name, "json").path, environment: Self.environment)
        var lines = result.diagnostics.map(\.description)
        if result.errors.isEmpty { lines.append("ok") }
        let expected = try String(contentsOf: Self.url(name, "expected"), encoding: .utf8)
            .split(separator: "\n", omittingEmptySubsequences: true).map(String.init)
        #expect(lines == expected)
        #expect((result.config != nil) == result.errors.isEmpty)
    }
}
