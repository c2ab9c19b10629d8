# SyTest plugin for Lattice: starts the `lattice` binary as
#
#     $HS_BIN --config FILE [extra args...]
#
# with a config file in Lattice's own format (see `lattice generate-config`).
# Selected with `run-tests.pl -I Lattice` when SYTEST_PLUGINS names the folder
# holding this plugin's `plugin/` folder (sytest/run.sh does that).
#
# Both packages live in this one file on purpose: run-tests.pl only puts the
# plugin lib folder on @INC while it loads the factories, so anything the
# factory needs must be loaded at that moment.

use strict;
use warnings;

package SyTest::HomeserverFactory::Lattice;
use base qw( SyTest::HomeserverFactory );

sub _init
{
   my $self = shift;

   $self->{args} = {
      hs_bin  => $ENV{HS_BIN},
      hs_args => [],
   };
   $self->{impl_name} = $ENV{SYTEST_HS_IMPL_NAME} // "dendrite";

   $self->SUPER::_init( @_ );
}

# Decides which implementation_specific tests run. "dendrite" turns on the
# four /_synapse/admin/v1/register shared-secret tests (and with them the
# admin-user fixture) plus one Dendrite-only federation test; "synapse" would
# also turn on Synapse-only admin API tests that Lattice does not serve.
sub implementation_name
{
   my $self = shift;
   return ref $self ? $self->{impl_name} : "dendrite";
}

sub get_options
{
   my $self = shift;
   return (
      'hs-binary=s'    => \$self->{args}{hs_bin},
      'hs-arg=s'       => $self->{args}{hs_args},
      'hs-impl-name=s' => \$self->{impl_name},
      $self->SUPER::get_options(),
   );
}

sub print_usage
{
   print STDERR <<'EOF2';
       --hs-binary PATH         - the lattice binary (default: $HS_BIN)
       --hs-arg ARG             - extra argument for the binary (repeatable)
       --hs-impl-name NAME      - implementation_name for implementation-specific
                                  tests (default: dendrite)
EOF2
}

sub create_server
{
   my $self = shift;
   my %params = ( @_, %{ $self->{args} } );

   defined $params{hs_bin} and length $params{hs_bin}
      or die "Lattice: no binary (set HS_BIN or pass --hs-binary)\n";
   -x $params{hs_bin}
      or die "Lattice: $params{hs_bin} is not executable\n";

   return SyTest::Homeserver::Lattice->new( %params );
}


package SyTest::Homeserver::Lattice;
use base qw( SyTest::Homeserver );

use Carp;
use Cwd qw( getcwd );
use File::Path qw( remove_tree );
use JSON ();
use MIME::Base64 qw( encode_base64 );

use Crypt::Ed25519;
use SyTest::SSL qw( ensure_ssl_key create_ssl_cert );

sub _init
{
   my $self = shift;
   my ( $args ) = @_;

   $self->{$_} = delete $args->{$_} for qw( hs_bin hs_args );
   $self->{hs_args} //= [];

   $self->SUPER::_init( $args );

   my $idx = $self->{hs_index};
   $self->{ports} = {
      https => main::alloc_port( "lattice[$idx].https" ),
      http  => main::alloc_port( "lattice[$idx].http" ),
   };
   $self->{paths} = {};
}

# Matrix IDs on this server end in ":localhost:PORT"; SyTest's federation
# client also connects to https://<server_name>/ directly (no SRV, no
# .well-known), so the name is host:port of the HTTPS listener.
sub server_name
{
   my $self = shift;
   return $self->{bind_host} . ":" . $self->{ports}{https};
}

sub federation_host { $_[0]->{bind_host} }
sub federation_port { $_[0]->{ports}{https} }

sub public_baseurl
{
   my $self = shift;
   return "https://$self->{bind_host}:$self->{ports}{https}";
}

sub secure_port   { $_[0]->{ports}{https} }
sub unsecure_port { $_[0]->{ports}{http} }

sub start
{
   my $self = shift;

   my $hs_dir = $self->{hs_dir};
   my $output = $self->{output};

   # Fresh state for every run.
   unlink map { "$hs_dir/lattice.db$_" } "", "-wal", "-shm";
   unlink "$hs_dir/lattice.log";
   remove_tree( "$hs_dir/media" ) if -d "$hs_dir/media";

   # TLS key + certificate for CN/SAN = bind host, signed by SyTest's CA
   # (keys/ca.crt, relative to the sytest checkout, which is the cwd).
   $self->{paths}{tls_cert} = "$hs_dir/tls.crt";
   $self->{paths}{tls_key}  = "$hs_dir/tls.key";
   ensure_ssl_key( $self->{paths}{tls_key} );
   create_ssl_cert( $self->{paths}{tls_cert}, $self->{paths}{tls_key}, $self->{bind_host} );
   $self->{paths}{ca_cert} = getcwd() . "/keys/ca.crt";

   # Ed25519 server signing key in Lattice's (and Synapse's) file format:
   #   "ed25519 <version> <unpadded base64 of the 32-byte seed>"
   $self->{paths}{signing_key} = "$hs_dir/signing.key";
   if( ! -f $self->{paths}{signing_key} ) {
      my $seed = Crypt::Ed25519::eddsa_secret_key();
      ( my $b64 = encode_base64( $seed, "" ) ) =~ s/=+$//;
      $self->write_file( "signing.key", "ed25519 a_sytest $b64\n" );
   }

   $self->{paths}{config} = $self->write_yaml_file( "lattice.yaml" => $self->_build_config );

   my @command = ( $self->{hs_bin}, "--config", $self->{paths}{config}, @{ $self->{hs_args} } );
   $output->diag( "Starting homeserver: @command" );

   my $idx = $self->{hs_index};

   # Ready == the HTTPS port accepts TCP connections: Lattice migrates its
   # database before it opens any listener.
   return $self->_start_process_and_await_connectable(
      setup => [
         env => {
            %ENV,
            SYTEST_HS_DIR   => $hs_dir,
            SYTEST_HS_INDEX => $idx,
         },
      ],
      command      => \@command,
      connect_host => $self->{bind_host},
      connect_port => $self->{ports}{https},
      name         => "lattice-$idx",
   )->else( sub {
      die "Unable to start homeserver $idx: $_[0]\n";
   })->on_done( sub {
      $output->diag( "Homeserver $idx is accepting connections" );
   });
}

# Stopping is inherited: kill_and_await_finish sends SIGINT (Lattice shuts
# down gracefully and exits 0), then SIGKILL after 30 s.

# Lattice's config (keys as in `lattice generate-config`). Options for what
# SyTest also offers (application service files, SMTP, recaptcha, CAS,
# outbound TLS trust) are added here as Lattice gains those features; an
# unknown key would stop the server at start-up.
sub _build_config
{
   my $self = shift;

   my $hs_dir    = $self->{hs_dir};
   my $bind_host = $self->{bind_host};
   my $true      = JSON::true;
   my $false     = JSON::false;

   # every listener serves everything: tests reach federation endpoints
   # (e.g. /_matrix/federation/v1/openid/userinfo) via public_baseurl too
   my @resources = qw( client federation );

   return {
      server_name => $self->server_name,
      signing_key => $self->{paths}{signing_key},

      database => {
         dsn => "sqlite://$hs_dir/lattice.db",
      },

      listeners => [
         {
            address   => "$bind_host:$self->{ports}{https}",
            resources => [ @resources ],
            tls_cert  => $self->{paths}{tls_cert},
            tls_key   => $self->{paths}{tls_key},
         },
         {
            address   => "$bind_host:$self->{ports}{http}",
            resources => [ @resources ],
         },
      ],

      registration => {
         # POST /register with auth type m.login.dummy creates the account
         open          => $true,
         guests        => $true,
         # HMAC-SHA1 key of /_synapse/admin/v1/register; SyTest hard-codes it
         shared_secret => "reg_secret",
         # cheapest password hashing: SyTest registers thousands of users
         bcrypt_cost   => 4,
      },

      # SyTest fires requests fast from few users
      rate_limits => { enabled => $false },

      presence => { enabled => $true },

      # SyTest's push gateway listens on plain HTTP on this host
      push => {
         allow_private_addresses => $true,
         allow_http              => $true,
         retry_initial           => "100ms",
      },

      # SyTest's own HTTPS servers (push gateway, pages) use certificates of its CA
      outbound => { ca_files => [ $self->{paths}{ca_cert} ] },

      # URL previews of pages SyTest serves itself, on this host
      media => {
         path        => "$hs_dir/media",
         url_preview => {
            enabled                 => $true,
            allow_private_addresses => $true,
         },
      },

      log => {
         level => "debug",
         file  => "$hs_dir/lattice.log",
      },
   };
}

1;
