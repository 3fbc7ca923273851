import Foundation

/// MaxMind DB files for tests, written by MaxMind's own writer (Debian `libmaxmind-db-writer-perl`) in the layout of
/// GeoLite2-Country: each network maps to `{"country": {"iso_code": CODE}}`.
public enum GeoIPFixture {
    public struct WriterFailed: Error, CustomStringConvertible {
        public let output: String
        public var description: String { "the MaxMind DB writer failed: \(output)" }
    }

    /// Writes `networks` (CIDR text, IPv4 or IPv6, with its country code) to `path`.
    public static func write(_ networks: [(network: String, country: String)], to path: String) throws {
        let inserts = networks.map { "$tree->insert_network('\($0.network)', { country => { iso_code => '\($0.country)' } });" }
        try write(inserts, type: "GeoLite2-Country", to: path)
    }

    /// Writes an ASN database (GeoLite2-ASN's layout: `autonomous_system_number`) to `path`.
    public static func writeASNs(_ networks: [(network: String, asn: Int)], to path: String) throws {
        let inserts = networks.map {
            "$tree->insert_network('\($0.network)', { autonomous_system_number => \($0.asn), autonomous_system_organization => 'AS\($0.asn)' });"
        }
        try write(inserts, type: "GeoLite2-ASN", to: path)
    }

    private static func write(_ inserts: [String], type: String, to path: String) throws {
        let script = """
            use strict; use MaxMind::DB::Writer::Tree;
            my %types = (country => 'map', iso_code => 'utf8_string', autonomous_system_number => 'uint32',
                         autonomous_system_organization => 'utf8_string');
            my $tree = MaxMind::DB::Writer::Tree->new(
                ip_version => 6, record_size => 24, database_type => '\(type)', languages => ['en'],
                description => { en => 'gateway test countries' }, remove_reserved_networks => 0,
                map_key_type_callback => sub { $types{ $_[0] } });
            \(inserts.joined(separator: "\n"))
            open my $out, '>:raw', $ARGV[0] or die "cannot write $ARGV[0]: $!";
            $tree->write_tree($out);
            close $out;
            """
        let (status, output) = try runToCompletion("/usr/bin/perl", ["-e", script, path])
        guard status == 0 else { throw WriterFailed(output: output) }
    }
}
