import Foundation
import GatewayConfig
import Testing

/// The shipped configs (gateway.json and examples/*.json) must stay valid as the schema grows.
@Suite struct ExampleConfigTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()

    static var files: [String] {
        let examples = (try? FileManager.default.contentsOfDirectory(atPath: root.appendingPathComponent("examples").path)) ?? []
        return ["gateway.json"] + examples.filter { $0.hasSuffix(".json") }.sorted().map { "examples/\($0)" }
    }

    @Test(arguments: files)
    func isValid(_ file: String) {
        // Secrets come from the environment, as an operator would provide them.
        let environment = [
            "JWT_SECRET": String(repeating: "s", count: 32), "OIDC_CLIENT_SECRET": "client-secret",
            "OIDC_COOKIE_SECRET": String(repeating: "c", count: 32), "STRIPE_WEBHOOK_SECRET": "whsec_" + String(repeating: "w", count: 32),
        ]
        let result = ConfigLoader.load(path: Self.root.appendingPathComponent(file).path, environment: environment)
        #expect(result.errors.isEmpty, "\(result.errors)")
        #expect(result.warnings.isEmpty, "\(result.warnings)")
    }

    @Test func examplesArePresent() {
        #expect(Self.files.count >= 3)
    }
}
