import Foundation
import GatewayConfig
import Testing
import TestSupport

/// `geoip` with a MaxMind DB file written by MaxMind's own writer: clients placed in countries by the address
/// `trusted_proxies` resolve (here from X-Forwarded-For, the test's clients all being 127.0.0.1).
@Suite struct GeoIPTests {
    static let networks = [("81.2.69.0/24", "GB"), ("89.160.20.0/24", "SE"), ("2a00:1450::/32", "IE")]

    // The top-level deny_countries refuses before routing; a route's allow_countries refuses other countries and
    // addresses the database does not place; set_from sends the country upstream (and removes a client's forgery when
    // there is none); the access log names it. A reload opens the database again, so a refreshed file takes effect.
    @Test func countriesOfClients() async throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("geoip-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        let database = folder.appendingPathComponent("countries.mmdb").path
        try GeoIPFixture.write(Self.networks, to: database)
        let routes = #"""
            [{ "name": "uk", "match": { "path_prefix": "/uk" }, "upstream": "demo", "allow_countries": ["gb"] },
             { "name": "all", "upstream": "demo", "request_headers": { "set_from": { "X-Client-Country": "country" } } }]
            """#
        let top = #""trusted_proxies": ["127.0.0.1"], "geoip": { "database": "\#(database)" }, "deny_countries": ["SE"],"#
        try await withUpstreams { upstreams in
            try await withGateway(basicConfig(routes: routes, top: top), upstreams: upstreams) { gateway in
                func request(_ path: String, from client: String) async throws -> TestResponse {
                    try await gateway.request("GET", path, headers: [("X-Forwarded-For", client), ("X-Client-Country", "US")])
                }
                let british = try await request("/echo", from: "81.2.69.142")
                #expect(british.status == 200 && british.echoedHeaders["x-client-country"] == "GB")
                #expect(try await gateway.accessLog(for: british)["country"] as? String == "GB")
                #expect(try await request("/uk/shop", from: "81.2.69.142").status == 200)

                let swedish = try await request("/echo", from: "89.160.20.112")
                #expect(swedish.status == 403 && swedish.errorCode == "COUNTRY_NOT_ALLOWED")

                let irish = try await request("/echo", from: "2a00:1450::1")
                #expect(irish.status == 200 && irish.echoedHeaders["x-client-country"] == "IE")
                let irishInUK = try await request("/uk/shop", from: "2a00:1450::1")
                #expect(irishInUK.status == 403 && irishInUK.errorCode == "COUNTRY_NOT_ALLOWED")

                let unplaced = try await request("/echo", from: "10.1.2.3")
                #expect(unplaced.status == 200 && unplaced.echoedHeaders["x-client-country"] == nil, "the client's own field never passes")
                #expect(try await gateway.accessLog(for: unplaced)["country"] == nil)
                #expect(try await request("/uk/shop", from: "10.1.2.3").status == 403)
                #expect(upstreams[0].requestsServed == 4)

                try GeoIPFixture.write([("81.2.69.0/24", "FR")], to: database)
                try await gateway.gateway.reload(config: makeConfig(basicConfig(routes: routes, top: top), upstreams: upstreams))
                let moved = try await request("/echo", from: "81.2.69.142")
                #expect(moved.echoedHeaders["x-client-country"] == "FR")
                #expect(try await request("/uk/shop", from: "81.2.69.142").status == 403)
                #expect(try await request("/echo", from: "89.160.20.112").status == 200, "no longer placed in Sweden")
            }
        }
    }

    // geoip.asn_database: the client's network operator by its number, for deny_asns (a hosting provider's scrapers)
    // and allow_asns (a partner's network only), upstream through set_from and in the access log; beside a country
    // database, both are looked up.
    @Test func networksOfClients() async throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("geoip-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        let (countries, networks) = (folder.appendingPathComponent("countries.mmdb").path, folder.appendingPathComponent("asn.mmdb").path)
        try GeoIPFixture.write(Self.networks, to: countries)
        try GeoIPFixture.writeASNs([("81.2.69.0/24", 64501), ("89.160.20.0/24", 64500), ("2a00:1450::/32", 64502)], to: networks)
        let routes = #"""
            [{ "name": "partners", "match": { "path_prefix": "/partners" }, "upstream": "demo", "allow_asns": [64501] },
             { "name": "all", "upstream": "demo", "request_headers": { "set_from": { "X-Client-ASN": "asn", "X-Client-Country": "country" } } }]
            """#
        let top = #""trusted_proxies": ["127.0.0.1"], "geoip": { "database": "\#(countries)", "asn_database": "\#(networks)" }, "deny_asns": [64500],"#
        try await withUpstreams { upstreams in
            try await withGateway(basicConfig(routes: routes, top: top), upstreams: upstreams) { gateway in
                func request(_ path: String, from client: String) async throws -> TestResponse {
                    try await gateway.request("GET", path, headers: [("X-Forwarded-For", client)])
                }
                let partner = try await request("/echo", from: "81.2.69.142")
                #expect(partner.echoedHeaders["x-client-asn"] == "64501" && partner.echoedHeaders["x-client-country"] == "GB")
                let log = try await gateway.accessLog(for: partner)
                #expect("\(log["asn"] ?? "")" == "64501" && log["country"] as? String == "GB")
                #expect(try await request("/partners/x", from: "81.2.69.142").status == 200)
                let other = try await request("/partners/x", from: "2a00:1450::1")
                #expect(other.status == 403 && other.errorCode == "NETWORK_NOT_ALLOWED")
                let unplaced = try await request("/partners/x", from: "10.0.0.1")
                #expect(unplaced.status == 403, "an allow list refuses addresses in no network")
                let hosting = try await request("/echo", from: "89.160.20.112")
                #expect(hosting.status == 403 && hosting.errorCode == "NETWORK_NOT_ALLOWED", "the top-level deny_asns, before routing")
                #expect(try await request("/echo", from: "10.0.0.1").echoedHeaders["x-client-asn"] == nil)
            }
        }
        let withoutDatabase = ConfigLoader.load(
            text: basicConfig(targets: #""http://127.0.0.1:9""#, top: #""geoip": { "database": "\#(countries)" }, "deny_asns": [16509],"#), environment: [:])
        #expect(withoutDatabase.errors.map(\.description) == ["deny_asns: needs geoip.asn_database"])
    }

    // gateway check opens the database: a file that is none is an error at geoip.database, as is a country rule
    // without a geoip section.
    @Test func checkedDatabase() async throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("geoip-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        let notADatabase = folder.appendingPathComponent("countries.mmdb").path
        try Data("not a MaxMind DB".utf8).write(to: URL(fileURLWithPath: notADatabase))
        let file = folder.appendingPathComponent("gateway.json").path
        try Data(basicConfig(targets: #""http://127.0.0.1:9""#, top: #""geoip": { "database": "\#(notADatabase)" },"#).utf8).write(to: URL(fileURLWithPath: file))
        let result = try await runCommand(Binaries.gateway, ["check", "--config", file])
        #expect(result.status != 0)
        #expect(result.stdout.hasPrefix("geoip.database: \(notADatabase): The MaxMind DB file"), "\(result.stdout)")

        try Data(basicConfig(targets: #""http://127.0.0.1:9""#, top: #""allow_countries": ["DE"],"#).utf8).write(to: URL(fileURLWithPath: file))
        let unplaced = try await runCommand(Binaries.gateway, ["check", "--config", file])
        #expect(unplaced.status == 1 && unplaced.stdout.hasPrefix("allow_countries: needs the top-level geoip section (its database)"), "\(unplaced.stdout)")
    }
}
