import GatewayAuth
import GatewayConfig
import Testing

/// `auth.mtls_clients` matching without sockets: subjects in any attribute order, common names, escapes.
@Suite struct MTLSClientTableTests {
    let table = MTLSClientTable([
        MTLSClientConfig(id: "billing", subject: "CN=billing-1, O=Example", commonName: nil, scopes: ["orders:read"]),
        MTLSClientConfig(id: "reports", subject: nil, commonName: "reports.internal", scopes: []),
        MTLSClientConfig(id: "comma", subject: #"CN=Doe\, Jane,O=Example"#, commonName: nil, scopes: []),
    ])

    @Test func subjectsMatchInAnyOrder() {
        #expect(table.identify(subject: "CN=billing-1,O=Example")?.subject == "billing")
        #expect(table.identify(subject: "O=Example,CN=billing-1")?.subject == "billing")
        #expect(table.identify(subject: "O=Example,CN=billing-1")?.method == .mtls)
        #expect(table.identify(subject: "O=Example,CN=billing-1")?.scopes == ["orders:read"])
        #expect(table.identify(subject: "CN=billing-1,O=Example,OU=Extra") == nil, "every attribute must match")
        #expect(table.identify(subject: "CN=billing-1") == nil)
    }

    @Test func commonNamesAndEscapes() {
        #expect(table.identify(subject: "O=Anyone,CN=reports.internal")?.subject == "reports")
        #expect(table.identify(subject: "CN=reports.internal.evil") == nil)
        #expect(table.identify(subject: #"O=Example,CN=Doe\, Jane"#)?.subject == "comma", "an escaped comma is part of the value")
        #expect(table.identify(subject: "CN=Doe,CN= Jane,O=Example") == nil)
    }
}
